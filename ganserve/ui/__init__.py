"""The Gradio latent explorer (``ganserve ui``): a UI over a Backend, in-process models or a ganserve server.

Import ``ganserve.ui.app`` only where Gradio is installed (the ``ui`` extra); the backends need no Gradio.
"""

from ganserve.ui.backend import Backend, BackendError, LocalBackend, ModelInfo, Picture

__all__ = ["Backend", "BackendError", "LocalBackend", "ModelInfo", "Picture"]
