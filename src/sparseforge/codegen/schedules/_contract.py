"""Block annotations shared by the TE kernels (``kernels_*``) and the schedule rules.

A kernel built by this package marks its main block with ``KERNEL`` (which kernel) and the
tile sizes it was laid out for; FuseOps/FuseTIR keep block annotations, so the rule finds the
block again inside a fused prim_func and schedules it with the tiles its data layout assumes.
"""

from __future__ import annotations

KERNEL = "sparseforge.kernel"  #: str: one of the kernel names below
TILE_M = "sparseforge.tile_m"  #: int: rows of the register tile (MR; output pixels for convs)
TILE_N = "sparseforge.tile_n"  #: int: columns of the register tile (NR, a multiple of the vector width)
LANES = "sparseforge.lanes"  #: int: float32 SIMD lanes the layout was chosen for
BATCH_DIMS = "sparseforge.batch_dims"  #: int: leading output dims kept as a separate batch loop

DENSE = "dense"
CONV2D_NCHWC = "conv2d_nchwc"
DEPTHWISE_NCHWC = "depthwise_nchwc"
WINOGRAD_INPUT = "winograd_input"
WINOGRAD_OUTPUT = "winograd_output"
PAD = "pad"  #: the spatial zero-padding producer of a convolution


def block_kernel(block) -> str | None:
    """The kernel name annotated on a TIR block (``None`` if none)."""
    value = block.annotations.get(KERNEL)
    return None if value is None else str(value)


def ann_int(block, key: str, default: int) -> int:
    value = block.annotations.get(key)
    return default if value is None else int(value)


def is_hand_scheduled(func) -> bool:
    """True for a PrimFunc marked ``"tirx.is_scheduled"`` (hand-written: never fuse or reschedule)."""
    attrs = getattr(func, "attrs", None)
    return attrs is not None and "tirx.is_scheduled" in attrs and bool(attrs["tirx.is_scheduled"])
