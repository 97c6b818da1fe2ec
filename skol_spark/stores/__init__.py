"""Where models live: model directories (any filesystem Spark writes), Redis, Keras files.
Each takes and gives a saved-stage record plus a trained network, never a stage class."""
