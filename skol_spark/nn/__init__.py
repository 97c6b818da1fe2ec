"""The network, in plain Keras 3: the BiLSTM and its registered loss, the CRF output layer,
the input projection, and the trained network as a value (architecture JSON + weights)."""
