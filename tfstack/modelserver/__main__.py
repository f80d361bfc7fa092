import sys

from tfstack.modelserver.main import main

sys.exit(main())
