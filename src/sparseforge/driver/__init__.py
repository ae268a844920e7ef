"""Orchestration: the flows that tie the floors below together -- compile, calibrate, bench, verify.

Each flow is one module; :mod:`sparseforge.api` exposes them. ``codegen`` only lowers and ``runtime`` only loads
and runs; everything that goes from a model to a measured or checked artifact lives here. Importing this package
imports TVM (through ``sparseforge.codegen``).
"""
