"""ganserve.handlers"""
