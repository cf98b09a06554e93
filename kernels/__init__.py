"""ganserve.kernels"""
