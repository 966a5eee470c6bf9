from .images import ImageBatches, ImageDataset, load_images

__all__ = ["ImageBatches", "ImageDataset", "load_images"]
