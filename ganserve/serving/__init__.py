"""Serving: the engine-independent request service, and what runs it under TorchServe (archives, config, launcher).

``service`` holds no TorchServe imports: another engine (KServe custom predictor, Ray Serve, Triton's Python backend)
wraps ``SampleService.handle_batch`` the way handlers/generator_handler.py does.
"""
