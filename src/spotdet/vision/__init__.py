"""Image loading, preprocessing and drawing."""
