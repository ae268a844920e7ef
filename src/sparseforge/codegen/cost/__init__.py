"""Cost models the decision pass asks for predicted kernel times: measured on the host (:mod:`.measured`, timed by
:mod:`.timer`) or published crossover densities for targets without a device here (:mod:`.rules`)."""
