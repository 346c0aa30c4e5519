"""The broker channel keeps one Redis client per connection pool (taskapp.broker_transport)."""

from __future__ import annotations


def test_a_broker_channel_shares_one_redis_client_until_its_pool_is_replaced(stack):
    from taskapp import broker_transport
    from taskapp.celery_app import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker_transport.Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        with channel.conn_or_acquire() as client:  # what a publish or an ack uses
            assert client is first
        channel._disconnect_pools()  # what kombu does when the broker connection is lost
        again = channel._create_client()
        assert again is not first and again.connection_pool is channel.pool
        assert again.ping()
        channel.basic_publish(channel.prepare_message("{}"), exchange="", routing_key="taskapp-test-transport")
        assert again.llen("taskapp-test-transport") == 1  # a publish through the new client lands
        again.delete("taskapp-test-transport")
