"""The gateway: per-meter polling, health and value quality, independent of OPC UA.

The poller talks to a meter through the clients and hands what it learns to a
``MeterSink`` (the OPC UA publisher implements it), so that polling policy can be read
and tested without an OPC UA server.
"""
