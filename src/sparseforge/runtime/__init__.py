"""Run, verify and benchmark compiled artifacts: ``sparseforge.runtime.load(OUTDIR)(**inputs)``."""


def load(outdir, threads=None):
    """Load a compiled artifact folder (see :mod:`sparseforge.runtime.artifact`)."""
    from sparseforge.runtime.artifact import load as _load

    return _load(outdir, threads)


__all__ = ["load"]
