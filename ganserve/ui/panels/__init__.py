"""The explorer page's panels: one module per group of controls (the sidebar's shared settings, each tab, the
semantic directions), each building its components inside the layout and then wiring its events on the ``Page``.

Each module's ``FIELDS`` names the request fields its controls present; any other field a family declares with a
page widget gets a generic control (``ganserve.ui.fields``).
"""
