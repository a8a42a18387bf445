"""Transform file formats: ITK (through SimpleITK), OME-NGFF scene, BigWarp."""
