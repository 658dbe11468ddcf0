// A new or changed migration must rebuild this crate: `sqlx::migrate!` embeds the files at
// compile time, and cargo does not otherwise know they are inputs.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
