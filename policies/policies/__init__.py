"""LSTM PPO training, ONNX export and the onnxruntime policy runtime and node.

Not built yet: arrives with the training and policy-node issues.
"""
