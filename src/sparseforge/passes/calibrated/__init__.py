"""Pruning with calibration data: activation statistics per layer (:mod:`.stats`), Wanda scores (:mod:`.wanda`)
and SparseGPT's blockwise OBS update (:mod:`.sparsegpt`). Pure NumPy on the ``(output, reduction)`` weight view;
the statistics are collected by the orchestration layer (ONNX Runtime) and handed to the prune pass."""
