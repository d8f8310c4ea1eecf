"""What the Keras adapters (`tfrnn.keras`, `tfrnn.tf_keras`) share; no Keras import here."""
