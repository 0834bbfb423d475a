"""Neural networks of the reconstruction pipeline: θ encoder, segmentation UNet, perceptual face networks."""
from .backbones import load_backbone
from .chip import chip_transform, face_chip
from .encoder import Encoder, default_scales
from .eval_view import eval_view
from .face_resnets import IResNet50, VGGFace2ResNet50
from .perceptual import DlibFaceNet, PerceptualOutput
from .unet import UNet, face_mask

__all__ = ["Encoder", "default_scales", "UNet", "DlibFaceNet", "PerceptualOutput", "face_chip", "chip_transform",
           "load_backbone", "IResNet50", "VGGFace2ResNet50", "eval_view", "face_mask"]
