"""Peer libraries' implementations as registered explainers (``captum.*``, ``traker.*``, ...).

Each module wraps one library and maps its output onto the attribution contract
(``(n_test, n_train)`` float32, positive = supports) with a ``self_influence()``. The modules
import only torch and this package at import time; the peer library is imported inside ``fit``
(:func:`~dattr_eval.explainers.adapters._common.import_peer`), so registering the names is cheap
and a missing peer raises an ``ImportError`` naming the ``peers`` extra.
"""

from __future__ import annotations

from dattr_eval.discovery import import_submodules

import_submodules(__name__, __path__)
