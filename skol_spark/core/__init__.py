"""What both sides share, in numpy and Arrow only: feature vectors, windows, invalid rows,
class weights, the decision rule and devices. No Spark, no network."""
