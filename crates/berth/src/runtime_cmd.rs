pub fn main_from_args(_a: Vec<std::ffi::OsString>) -> i32 { 0 }
#[derive(clap::Args)] pub struct RuntimeArgs { #[arg(trailing_var_arg = true, allow_hyphen_values = true)] args: Vec<String> }
