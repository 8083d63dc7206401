//! One file a page (or a family of small pages).

mod auth;
mod layout;
mod overview;
mod settings;
mod sources;

pub use auth::{Login, Setup};
pub use layout::{Layout, NotFound};
pub use overview::{Catalog, Debugger, Destinations, Overview, Runs};
pub use settings::Settings;
pub use sources::{SourceDetail, Sources};
