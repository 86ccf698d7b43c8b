//! The closed vocabularies of a Savepoint and of a review: [`Origin`], [`SavepointState`],
//! [`SnapshotType`], [`FormatType`] and [`Operation`], each with its wire spelling, so
//! decisions match on enums and never compare string literals.

/// An enum whose variants have one wire spelling each: serde, the CRD schema, the list
/// of accepted values in messages and [`parse`](Origin::parse) all read the same table.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
        )]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The value spelled `text` on the wire, if any.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// The accepted spellings, comma separated, for messages.
            pub fn accepted() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// How a Savepoint came to be (the product's `metadata.origin`).
    pub enum Origin {
        /// Requested by a user through the platform.
        UserRequest = "USER_REQUEST",
        /// Taken when the Deployment was suspended.
        Suspend = "SUSPEND",
        /// A copy of another Savepoint resource; both point at the same Flink savepoint.
        Copied = "COPIED",
        /// A retained Flink checkpoint kept after the job shut down.
        RetainedCheckpoint = "RETAINED_CHECKPOINT",
    }
}

wire_enum! {
    /// Kind of snapshot (the product's `metadata.type`).
    pub enum SnapshotType {
        /// A full snapshot.
        Full = "FULL",
        /// An incremental checkpoint.
        Incremental = "INCREMENTAL",
        /// Not known.
        Unknown = "UNKNOWN",
    }
}

wire_enum! {
    /// Flink's savepoint format.
    pub enum FormatType {
        /// Flink's state-backend independent format.
        Canonical = "CANONICAL",
        /// The state backend's own format.
        Native = "NATIVE",
    }
}

wire_enum! {
    /// Lifecycle state of a Savepoint.
    pub enum SavepointState {
        /// Being taken.
        Started = "STARTED",
        /// Complete and usable for restore.
        Completed = "COMPLETED",
        /// Taking it failed.
        Failed = "FAILED",
        /// Scheduled for deletion.
        PendingDeletion = "PENDING_DELETION",
        /// Being deleted.
        Deleting = "DELETING",
        /// Deleting it failed.
        FailedDeletion = "FAILED_DELETION",
    }
}

wire_enum! {
    /// The operation an AdmissionReview asks about (`request.operation`).
    pub enum Operation {
        /// An object is created.
        Create = "CREATE",
        /// An object is replaced or patched.
        Update = "UPDATE",
        /// An object is deleted.
        Delete = "DELETE",
        /// A connection to a subresource (exec, proxy, ...).
        Connect = "CONNECT",
    }
}
