"""``bsafusion view``: an interactive, self-contained page for the outputs of fuse / register.

:func:`view_outputs` reads an output folder; :func:`build_view` writes any list of
:class:`PairImages` (evaluate's report uses it for each pair and method);
:func:`make_server` serves the page on localhost. The page itself (HTML, script, style) is
package data under ``static/``.
"""

from __future__ import annotations

from bsafusion.viewer.collect import iter_output_pairs, output_stems, view_outputs
from bsafusion.viewer.page import IMAGE_KINDS, PairImages, build_view, pair_id
from bsafusion.viewer.serve import make_server

__all__ = ["IMAGE_KINDS", "PairImages", "build_view", "iter_output_pairs", "make_server",
           "output_stems", "pair_id", "view_outputs"]
