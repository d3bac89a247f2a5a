"""The standalone PySide6 application (installed as ``paraspinal_app``)."""
