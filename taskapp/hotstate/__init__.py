"""All of Redis: the client, the batch buffers and the quota gate."""
