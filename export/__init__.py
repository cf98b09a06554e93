"""ganserve.export"""
