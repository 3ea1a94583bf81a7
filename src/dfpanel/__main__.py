import sys

from dfpanel.cli import main

sys.exit(main())
