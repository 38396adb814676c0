"""Networks: the ResNet-50 backbone, the CAM classifier and the IRN relation network."""
