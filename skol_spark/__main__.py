import sys

from skol_spark.cli.main import main

sys.exit(main())
