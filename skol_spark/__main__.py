import sys

from skol_spark.cli import main

sys.exit(main())
