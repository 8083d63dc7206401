//! Copy-paste SDK snippets, with this server's URL and a write key filled in.

use crate::http::SnippetsOut;
use crate::store::SourceType;

pub fn render(base: &str, key: &str, kind: SourceType) -> SnippetsOut {
    let host = base.split_once("://").map(|(_, h)| h).unwrap_or(base);
    let analytics_js = format!(
        r#"<script type="module">
  // npm install @segment/analytics-next (or serve its standalone build yourself)
  import {{ AnalyticsBrowser }} from '@segment/analytics-next'
  // Settings come from {base}/v1/projects/{key}/settings and send events to {host}/v1
  export const analytics = AnalyticsBrowser.load({{ writeKey: '{key}', cdnURL: '{base}' }})
  analytics.page()
</script>"#
    );
    let analytics_node = format!(
        r#"// npm install @segment/analytics-node
import {{ Analytics }} from '@segment/analytics-node'

const analytics = new Analytics({{ writeKey: '{key}', host: '{base}' }})
analytics.track({{ userId: 'user-123', event: 'Order Completed', properties: {{ total: 42 }} }})
await analytics.closeAndFlush()"#
    );
    let rudder_python = format!(
        r#"# pip install rudder-sdk-python
import rudderstack.analytics as rudder_analytics

rudder_analytics.write_key = '{key}'
rudder_analytics.dataPlaneUrl = '{base}'
rudder_analytics.track('user-123', 'Order Completed', {{'total': 42}})
rudder_analytics.flush()"#
    );
    let rudder_js = format!(
        r#"<script type="module">
  // npm install @rudderstack/analytics-js (the bundled build needs nothing from a CDN)
  import {{ RudderAnalytics }} from '@rudderstack/analytics-js/bundled'
  const analytics = new RudderAnalytics()
  analytics.load('{key}', '{base}', {{ configUrl: '{base}' }})
  analytics.page()
</script>"#
    );
    let recommended = match kind {
        SourceType::Web => vec!["analytics_js", "rudder_js"],
        SourceType::Server => vec!["analytics_node", "rudder_python"],
        SourceType::Mobile => vec!["analytics_node", "rudder_python"],
    };
    SnippetsOut { recommended: recommended.into_iter().map(String::from).collect(), analytics_js, analytics_node, rudder_python, rudder_js }
}
