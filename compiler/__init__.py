"""Compiler: PyTorch capture, NeuralMatrix conversion, quantisation and the back end."""
