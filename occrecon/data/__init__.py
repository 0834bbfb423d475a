"""Data: landmarks and alignment (data-io), occluders, synthetic/real occlusion samples and the dataset format."""
