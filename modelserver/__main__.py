import sys

from modelserver.main import main

sys.exit(main())
