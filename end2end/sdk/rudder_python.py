"""Sends the six call types through rudder-sdk-python (batched, gzip) to a Switchyard server.

Usage: python rudder_python.py DATA_PLANE_URL WRITE_KEY
"""
import sys

import rudderstack.analytics as rudder_analytics

rudder_analytics.dataPlaneUrl = sys.argv[1]
rudder_analytics.write_key = sys.argv[2]
errors = []
rudder_analytics.on_error = lambda error, batch: errors.append(str(error))

rudder_analytics.identify('py-user', {'name': 'Ann', 'plan': 'pro'})
rudder_analytics.track('py-user', 'Order Completed', {'total': 42, 'currency': 'EUR'})
rudder_analytics.page('py-user', 'Docs', 'Home', {'url': 'https://example.com/docs'})
rudder_analytics.screen('py-user', 'Catalog', 'Main', {'items': 3})
rudder_analytics.group('py-user', 'py-group', {'employees': 12})
rudder_analytics.alias('py-anon', 'py-user')
rudder_analytics.flush()
if errors:
    print('errors:', errors, file=sys.stderr)
    sys.exit(1)
print('flushed')
