"""Writing outputs: image grids, arrays of images and codes, networks as ONNX or TorchScript."""
