//! The global registry: names to values of any type, found by type.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::error::RegistryError;
use crate::pid::Pid;
use crate::registry::Registry;
use crate::wait::{self, Timeout};

/// A value in the global registry: anything `Send + Sync`, looked up by type.
pub type AnyValue = Arc<dyn Any + Send + Sync>;

static GLOBAL: Lazy<Registry<String, AnyValue>> = Lazy::new(Registry::new);

/// The global registry: names to any `Send + Sync` value, with typed look-up.
///
/// Named supervisors register their handles here, so a
/// [`SupervisorRef`](crate::SupervisorRef) can be found by name; the name is released when
/// the supervisor exits.
///
/// # Examples
///
/// ```
/// use steadfast::registry;
///
/// registry().register_value("config-version", 3u32).unwrap();
/// assert_eq!(registry().lookup_as::<u32>("config-version").map(|(_, v)| v), Some(3));
/// // A look-up with the wrong type finds nothing; it never panics.
/// assert!(registry().lookup_as::<String>("config-version").is_none());
/// registry().unregister("config-version");
/// ```
pub fn registry() -> &'static Registry<String, AnyValue> {
    &GLOBAL
}

impl Registry<String, AnyValue> {
    /// Registers `name` to the calling process with a value of any type.
    ///
    /// # Errors
    ///
    /// As [`register`](Registry::register).
    pub fn register_value<T: Any + Send + Sync>(
        &self,
        name: impl Into<String>,
        value: T,
    ) -> Result<(), RegistryError> {
        self.register(name.into(), Arc::new(value))
    }

    /// Registers `name` on behalf of `pid` with a value of any type.
    ///
    /// # Errors
    ///
    /// As [`register_for`](Registry::register_for).
    pub fn register_value_for<T: Any + Send + Sync>(
        &self,
        pid: Pid,
        name: impl Into<String>,
        value: T,
    ) -> Result<(), RegistryError> {
        self.register_for(pid, name.into(), Arc::new(value))
    }

    /// The holder of `name` and its value, if registered with a value of type `T`.
    ///
    /// A name registered with another type gives `None`.
    pub fn lookup_as<T: Any + Clone>(&self, name: &str) -> Option<(Pid, T)> {
        // Clone the `T` under the read lock rather than the shared `Arc`, so readers of
        // one name do not contend on its reference count.
        self.lookup_with(name, |pid, value| {
            value.downcast_ref::<T>().map(|v| (pid, v.clone()))
        })
        .flatten()
    }

    /// Blocks until `name` is registered with a value of type `T`, for at most
    /// `timeout`, and returns its holder and value — the typed
    /// [`wait_for_registration`](Registry::wait_for_registration).
    ///
    /// A name held with a value of another type does not count: the wait goes on.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no such entry appears within the time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::{registry, Supervisor, SupervisorRef};
    ///
    /// let sup = Supervisor::builder().name("wait-as-doc").start()?;
    /// let (pid, app) = registry()
    ///     .wait_for_registration_as::<SupervisorRef>("wait-as-doc", Duration::from_secs(5))?;
    /// assert_eq!(pid, app.pid());
    /// # drop(sup);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for_registration_as<T: Any + Clone>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<(Pid, T), Timeout> {
        let what = format_args!(
            "{name:?} to be registered as {}",
            std::any::type_name::<T>()
        );
        wait::until_some(timeout, what, || self.lookup_as::<T>(name))
    }
}
