"""``python -m dpcore.jobs.torchrun TORCHRUN_FLAGS... -- MODULE ARGS...``: torchrun, keeping MODULE's arguments away
from torchrun's own parser.

``python -m torch.distributed.run ... -m dpcore train --nproc 2`` fails: torchrun's parser reads the script's
``--nproc`` as an abbreviation of its ``--nproc-per-node`` (and would take ``--master-port`` and the like for
itself). Here torchrun parses only its flags, and ``MODULE ARGS`` reach every process untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.errors import record
from torch.distributed.run import get_args_parser, run


@record
def main(argv: Sequence[str] | None = None) -> None:
    """Run torchrun with the flags before ``--`` on the module and arguments after it (exits like torchrun)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        raise SystemExit("usage: python -m dpcore.jobs.torchrun TORCHRUN_FLAGS... -- MODULE [ARGS...]")
    split = argv.index("--")
    module, *module_args = argv[split + 1:]
    args = get_args_parser().parse_args([*argv[:split], "-m", module])
    args.training_script_args = module_args
    run(args)


if __name__ == "__main__":
    main()
