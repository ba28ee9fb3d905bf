fn main() {
    std::process::exit(osimage::cli::main());
}
