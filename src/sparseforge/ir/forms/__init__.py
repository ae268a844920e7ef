"""Structure forms: one module per compressed weight format (CSR, BSR, N:M, ...).

Work in progress (round 2 architecture): each form module owns its encoding, decoding, NumPy reference, ONNX
function body, the options it offers a layer, its calibration keys and its packing.
"""
