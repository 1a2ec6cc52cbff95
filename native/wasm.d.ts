// @types/node 20 does not declare the WebAssembly global; the little we use is declared here.
declare namespace WebAssembly {
  interface Module { readonly __brand?: 'WebAssembly.Module' }
  interface Instance { readonly exports: Record<string, unknown> }
  type Imports = Record<string, Record<string, unknown>>;
  function compile(bytes: Uint8Array): Promise<Module>;
  function instantiate(module: Module, imports?: Imports): Promise<Instance>;
}
