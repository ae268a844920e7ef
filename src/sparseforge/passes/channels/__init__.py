"""Channel dependency analysis for exact channel removal (used by the ShrinkChannels rewrite).

* :mod:`.slots`: the DepGraph part: slots per channel, union-find components, sources/sinks/params, pins;
* :mod:`.constants`: per-channel constant propagation (``onnx.reference`` probes for elementwise ops);
* :mod:`.weight_ops`, :mod:`.flow`: node visitors (weight ops; ops channels flow through);
* :mod:`.graph`: :class:`ChannelGraph`, the builder running the visitors in graph order;
* :mod:`.plan`: :func:`plan_removal`, which components go and why the others stay.
"""
