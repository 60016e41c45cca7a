"""torch -> ONNX export of rsir embedding models: the contract in metadata_props, a parity check.

    python -m export.onnx CHECKPOINT --out model.onnx [--fp16]    # a checkpoint from training/
    python -m export.verify MODEL.onnx CHECKPOINT                 # parity of an exported model
    python -m export.default_model --aid DIR                      # the bundled default model
    python -m export.throughput MODEL.onnx ...                    # CPU onnxruntime images/s
"""
