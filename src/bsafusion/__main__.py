import sys

from bsafusion.cli import main

sys.exit(main())
