"""Names shared across passes: the custom op domain, ``meta`` keys and ``metadata_props`` keys."""

#: ONNX domain of sparseforge's own (sparse / structured) operators.
DOMAIN = "ai.sparseforge"
DOMAIN_VERSION = 1

#: ``value.meta`` / ``node.meta`` key: :class:`sparseforge.passes.analysis.WeightStructure` of a constant weight.
META_STRUCTURE = "sparseforge.structure"
#: ``node.meta`` key: ``{fact name: value}`` of the weight-bearing node, one entry per registered analysis fact
#: (:data:`sparseforge.passes.analysis.FACTS`), stored by StructureAnalysis.
META_FACTS = "sparseforge.facts"

#: ``model.meta`` key: True when the loaded model passed the ONNX checker with full (strict) shape inference, so
#: ``CheckWeights`` need not run that inference again (a few seconds at 100k nodes). Cleared by any change made
#: before the passes run.
META_CHECKED = "sparseforge.checked"

#: ``node.metadata_props`` key: the pass that created or last rewrote the node (survives export).
PROV_PASS = "pkg.sparseforge.pass"
#: ``node.metadata_props`` key: a short human-readable description of what the rewrite did.
PROV_NOTE = "pkg.sparseforge.note"
#: ``model.metadata_props`` key: comma-separated list of passes applied to the model.
PROV_PIPELINE = "pkg.sparseforge.pipeline"

#: Attribute of the DEBUG records a long step logs (``(done, total, what)``: the cost model measuring kernels on
#: ``sparseforge.codegen.cost``, bench rounds on ``sparseforge.driver.bench``); the CLI shows a bar and an estimate.
STEP_KEY = "sparseforge_step"
#: The loggers that log :data:`STEP_KEY` records: what the display calls their step, and whether it may animate
#: (bench rounds are shown as plain lines between rounds: an animation thread would run during the timing).
STEP_LOGGERS = {"sparseforge.codegen.cost": ("measuring kernels for the cost model", True),
                "sparseforge.driver.bench": ("timing engines", False)}


def step_record(logger, done: int, total: int, what: str) -> None:
    """Log one :data:`STEP_KEY` record on ``logger`` (a :class:`logging.Logger` named in :data:`STEP_LOGGERS`)."""
    logger.debug("%s (%d/%d)", what, done, total, extra={STEP_KEY: (done, total, what)})
