"""``bsafusion view``: write (and optionally serve) the interactive viewer of an output folder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view", help="an interactive page of the outputs of fuse / register",
        description="Write a self-contained page (HTML, script and images; works offline from "
        "the file) that shows each pair of OUT: fixed, moving, aligned and fused; an overlay "
        "with an opacity slider and a checkerboard (fixed vs moving, or vs aligned); the field "
        "as a warped grid and as |flow| in pixels; a pair list with search; a slice slider for "
        "volumes. Default page folder: OUT/view (replaced on a re-run).",
    )
    p.add_argument("folder", metavar="OUT", help="output folder of 'bsafusion fuse' or "
                   "'register'")
    p.add_argument("-o", "--out", help="page folder (default OUT/view)")
    p.add_argument("--serve", action="store_true", help="then serve the page on "
                   "http://127.0.0.1:PORT until Ctrl-C")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000; 0 = "
                   "any free port)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bsafusion.viewer import make_server, view_outputs

    index = view_outputs(args.folder, args.out)
    print(f"viewer -> {index} (open {index.resolve().as_uri()})", flush=True)
    if not args.serve:
        return 0
    server = make_server(index.parent, args.port)
    print(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
