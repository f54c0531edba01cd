"""diffusiondesk-server: serves an engine over the network (HTTP, a WebSocket stream of
engine/api's records, and AUTOMATIC1111's /sdapi/v1 routes). engine/remote.py is the client.
"""
