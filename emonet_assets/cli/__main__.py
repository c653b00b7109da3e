import sys

from emonet_assets.cli import main

sys.exit(main())
