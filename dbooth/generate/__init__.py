"""Images from a pipeline: class images for prior preservation (``class_images``) and samples (``sample``)."""
