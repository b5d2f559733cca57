import type { SellerProfile } from "./bindings/SellerProfile";

export function emptySeller(): SellerProfile {
  return {
    name: "",
    name_ar: "",
    vat_number: "",
    cr_number: "",
    address: { street: "", building_number: "", additional_number: "", district: "", city: "", postal_code: "", country: "SA" },
  };
}
