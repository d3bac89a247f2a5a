"""``python -m napari_paraspinal`` is the ``paraspinal`` command."""

from .cli import main

raise SystemExit(main())
