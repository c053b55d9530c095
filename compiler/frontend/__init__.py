"""Front end: capture a PyTorch module (torch.export) and lower it to the GEMM-only matrix graph."""
