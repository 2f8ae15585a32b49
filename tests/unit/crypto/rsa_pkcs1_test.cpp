// RSAES-PKCS1-v1_5 decryption without a padding oracle: implicit rejection known answers (the
// test vectors of draft-irtf-cfrg-rsa-guidance, which OpenSSL 3.2+ also carries), the same
// synthetic messages from both backends, and the errors that remain (public properties only).
#include "helpers.h"

namespace cdcp11::crypto::test {

namespace {

using CS = CipherParams::Scheme;

// The draft's 2048-bit test key, as PKCS#8.
Bytes kat_key_der() {
  return H(
      "308204bd020100300d06092a864886f70d0101010500048204a7308204a30201000282010100c8cc839714098da56caa"
      "23640f93dc8997c16372968fc1b0c6df5113c1c94e8b21e48ad2297e65419011b4e6d8f5e73b1b78b257400321d1ef6b"
      "602d4ec8ce8d141c94905eb4ad306639a49206534b6e7f2607423e97dffd133c88d721399defbc7e96ccdcbd7f3aae1f"
      "e892712bfb4929817d511666440a1facb7a208f5ea165910add8a3f2d497202360ccb632024f0d07169c1918f316f794"
      "b143aef54ec87522a4c02978f9689980bffbf649c307e81819bff88409638d48bd94be152b59ff649fa0bd629d0ffa18"
      "13c3abf4b56bd3c2ea5465dffa14589292a9d8a24ad26be7ee0510741b6382d43c83d5bfa40a46613d062be445517dbc"
      "af0cb4e1a7690203010001028201001455010e0f2d587663a666a6ff1ccdbbf0edd8100646d02a023922908992c4ad39"
      "e5565929726ef6508c3a71158ef0b6ff751d39d07580bb2d2f063210442d0603ff50dbbd7b35fe2c9bb19a47a1af85a4"
      "c24901e02ca8b58b7919b20edf32aacfbf51adb4bc4b61b9b7e968caa4d570f70ef18d8063228893e47d439efca79325"
      "9bcf2cd108a3d8688cdf078e7ac799969f2339d2c1f522b969684629a933baaec2681625eab84f4e56f4447e9d88fb9a"
      "199cf71023e0e257b14441b33c84d3bc67ca8031d2612618103a7a0a40844262f75d8890cd616e51f9035488fd6e099d"
      "e8ff6d65a4ff118254807c9f58d2fbba8ba151dc8c68be349c977a204e04c102818100f8f5ad6ba828931bea459b8a3f"
      "6dc041d23482409c2571e963f31f748602a256371b3883ed459ecf970526459edd16e05522f5a45d94751b2ec2daf272"
      "c7f8816a52c00d18080171634da899d7973222f51b937630548696a9f7d8c24a59497c1efcd455cfb97ee86d2b6d3497"
      "2b332fda303f04999b4eb6b5cc0bb33e7761dd02818100ce7a2e3b49a90b96330a12dc682bdfbdfbae8dd6dc03b6147a"
      "efbd575743f0f6da4d86235061b71afd9cad2d34025e56ac86b0f7743eb35e1acbca237895424465b706ed22175e5718"
      "c8c70b6703ea8f6b510f945be48e5a36bb3c3c91732b589dfc05d72d80903194452bda21348647ec72943f11a846e62f"
      "aebe8eb536b0fd02818076fe15f18ae239cdf1df6b445ca4bc6bb968d788c21933a4f5dcd280033d6712062cc08a6df2"
      "04c1fbd0be46307443e6dd4a6456375429d4e038ca256faf1c9bde91c6b17b76f81995f91c48cbbebc7bf0e3494c0835"
      "9e4e8cd6a587d7b96d6221fd7e0fb5c5575f082ee57769798071b2bbb4a32238151b47314bb654790311028181009988"
      "48b055499a1009cbc7d294b36b1ffdf2020e6e7364053e94de1a000dc9340587f7e27276f68cdf608d753b63377b03b6"
      "f4084d2c027c4b38960a6233ba9ed9738b76f10ea75be456078bf701f67cc6b3f3fdc186e64336c76b372e80910ec80b"
      "0adcc23d02fb9ae10486a28248075b4ea7e56ddfcf3882e451561471a291028180643bf746429f7d83667a0653021347"
      "efbfc05e6351f821a9debb60e0eccde5005ad9e9ec31e558f7e92c29328e74569d7cef7c74cabc2b355ed401a1a0914b"
      "4e3cbb06484e58196051169ed14caa2efa6ea044e054d26144cc1629c55010558a04e133f44b7c244dac25bf913c57b8"
      "90ee49f548259cd63404fef6859dcf975a");
}

struct Vector {
  const char* what;
  Bytes ciphertext;
  Bytes message;  // the real message, or the synthetic one the draft specifies
};

const std::vector<Vector>& vectors() {
  static const std::vector<Vector> v = {
    {"valid padding",
     H(
        "8bfe264e85d3bdeaa6b8851b8e3b956ee3d226fd3f69063a86880173a273d9f283b2eebdd1ed35f7e02d91c571981b67"
        "37d5320bd8396b0f3ad5b019daec1b0aab3cbbc026395f4fd14f13673f2dfc81f9b660ec26ac381e6db3299b4e460b43"
        "fab9955df2b3cfaa20e900e19c856238fd371899c2bf2ce8c868b76754e5db3b036533fd603746be13c10d4e3e6022eb"
        "c905d20c2a7f32b215a4cd53b3f44ca1c327d2c2b651145821c08396c89071f665349c25e44d2733cd9305985ceef643"
        "0c3cf57af5fa224089221218fa34737c79c446d28a94c41c96e4e92ac53fbcf384dea8419ea089f8784445a492c812eb"
        "0d409467f75afd7d4d1078886205a066"),
     to_bytes(view("lorem ipsum dolor sit amet"))},
    {"invalid: synthetic message of length 0",
     H(
        "20aaa8adbbc593a924ba1c5c7990b5c2242ae4b99d0fe636a19a4cf754edbcee774e472fe028160ed42634f8864900cb"
        "514006da642cae6ae8c7d087caebcfa6dad1551301e130344989a1d462d4164505f6393933450c67bc6d39d8f5160907"
        "cabc251b737925a1cf21e5c6aa5781b7769f6a2a583d97cce008c0f8b6add5f0b2bd80bee60237aa39bb20719fe75749"
        "f4bc4e42466ef5a861ae3a92395c7d858d430bfe38040f445ea93fa2958b503539800ffa5ce5f8cf51fa8171a91f36cb"
        "4f4575e8de6b4d3f096ee140b938fd2f50ee13f0d050222e2a72b0a3069ff3a6738e82c87090caa5aed4fcbe882c4964"
        "6aa250b98f12f83c8d528113614a29e7"),
     Bytes{}},
    {"invalid: synthetic message of the maximum length (k - 11)",
     H(
        "48cceab10f39a4db32f60074feea473cbcdb7accf92e150417f76b44756b190e843e79ec12aa85083a21f5437e7bad0a"
        "60482e601198f9d86923239c8786ee728285afd0937f7dde12717f28389843d7375912b07b991f4fdb0190fced8ba665"
        "314367e8c5f9d2981d0f5128feeb46cb50fc237e64438a86df198dd0209364ae3a842d77532b66b7ef263b83b1541ed6"
        "71b120dfd660462e2107a4ee7b964e734a7bd68d90dda61770658a3c242948532da32648687e0318286473f675b412d6"
        "468f013f14d760a358dfcad3cda2afeec5e268a37d250c37f722f468a70dfd92d7294c3c1ee1e7f8843b7d16f9f37ef3"
        "5748c3ae93aa155cdcdfeb4e78567303"),
     H(
        "22d850137b9eebe092b24f602dc5bb7918c16bd89ddbf20467b119d205f9c2e4bd7d2592cf1e532106e0f33557565923"
        "c73a02d4f09c0c22bea89148183e60317f7028b3aa1f261f91c979393101d7e15f4067e63979b32751658ef769610fe9"
        "7cf9cef3278b3117d384051c3b1d82c251c2305418c8f6840530e631aad63e70e20e025bcd8efb54c92ec6d3b106a2f8"
        "e64eeff7d38495b0fc50c97138af4b1c0a67a1c4e27b077b8439332edfa8608dfeae653cd6a628ac550395f7e74390e4"
        "2c11682234870925eeaa1fa71b76cf1f2ee3bda69f6717033ff8b7c95c9799e7a3bea5e7e4a1c359772fb6b1c6e6c516"
        "661dfe30c3")},
    {"invalid: length from the second to last PRF candidate",
     H(
        "1439e08c3f84c1a7fec74ce07614b20e01f6fa4e8c2a6cffdc3520d8889e5d9a950c6425798f85d4be38d300ea5695f1"
        "3ecd4cb389d1ff5b82484b494d6280ab7fa78e645933981cb934cce8bfcd114cc0e6811eefa47aae20af638a1cd163d2"
        "d3366186d0a07df0c81f6c9f3171cf3561472e98a6006bf75ddb457bed036dcce199369de7d94ef2c68e8467ee0604ee"
        "a2b3009479162a7891ba5c40cab17f49e1c438cb6eaea4f76ce23cce0e483ff0e96fa790ea15be67671814342d0a23f4"
        "a20262b6182e72f3a67cd289711503c85516a9ed225422f98b116f1ab080a80abd6f0216df88d8cfd67c139243be8dd7"
        "8502a7aaf6bc99d7da71bcdf627e7354"),
     H("0f9b")},
    {"invalid: length from the third to last PRF candidate",
     H(
        "1690ebcceece2ce024f382e467cf8510e74514120937978576caf684d4a02ad569e8d76cbe365a060e00779de2f0865c"
        "cf0d923de3b4783a4e2c74f422e2f326086c390b658ba47f31ab013aa80f468c71256e5fa5679b24e83cd82c3d1e05e3"
        "98208155de2212993cd2b8bab6987cf4cc1293f19909219439d74127545e9ed8a706961b8ee2119f6bfacafbef91b75a"
        "789ba65b8b833bc6149cf49b5c4d2c6359f62808659ba6541e1cd24bf7f7410486b5103f6c0ea29334ea6f4975b17387"
        "474fe920710ea61568d7b7c0a7916acf21665ad5a31c4eabcde44f8fb6120d8457afa1f3c85d517cda364af620113ae5"
        "a3c52a048821731922737307f77a1081"),
     H("4f02")},
    {"valid padding, 11-byte message",
     H(
        "6213634593332c485cef783ea2846e3d6e8b0e005cd8293eaebbaa5079712fd681579bdfbbda138ae4d9d952917a03c9"
        "2398ec0cb2bb0c6b5a8d55061fed0d0d8d72473563152648cfe640b335dc95331c21cb133a91790fa93ae44497c12870"
        "8970d2beeb77e8721b061b1c44034143734a77be8220877415a6dba073c3871605380542a9f25252a4babe8331cdd53c"
        "f828423f3cc70b560624d0581fb126b2ed4f4ed358f0eb8065cf176399ac1a846a31055f9ae8c9c24a1ba050bc208421"
        "25bc1753158f8065f3adb9cc16bfdf83816bdf38b624f12022c5a6fbfe29bc91542be8c0208a770bcd677dc597f5557d"
        "c2ce28a11bf3e3857f158717a33f6592"),
     to_bytes(view("lorem ipsum"))},
    {"valid, ciphertext with a leading zero byte",
     H(
        "00a2e8f114ea8d05d12dc843e3cc3b2edc8229ff2a028bda29ba9d55e3cd02911902fef1f42a075bf05e8016e8567213"
        "d6f260fa49e360779dd81aeea3e04c2cb567e0d72b98bf754014561b7511e083d20e0bfb9cd23f8a0d3c88900c49d2fc"
        "d5843ff0765607b2026f28202a87aa94678aed22a0c20724541394cd8f44e373eba1d2bae98f516c1e2ba3d86852d064"
        "f856b1daf24795e767a2b90396e50743e3150664afab131fe40ea405dcf572dd1079af1d3f0392ccadcca0a12740dbb2"
        "13b925ca2a06b1bc1383e83a658c82ba2e7427342379084d5f66b544579f07664cb26edd4f10fd913fdbc0de05ef887d"
        "4d1ec1ac95652397ea7fd4e4759fda8b"),
     to_bytes(view("lorem ipsum"))},
    {"valid (its synthetic message would be empty)",
     H(
        "b5e49308f6e9590014ffaffc5b8560755739dd501f1d4e9227a7d291408cf4b753f292322ff8bead613bf2caa181b221"
        "bc38caf6392deafb28eb21ad60930841ed02fd6225cc9c463409adbe7d8f32440212fbe3881c51375bb09565efb22e62"
        "b071472fb38676e5b4e23a0617db5d14d93519ac0007a30a9c822eb31c38b57fcb1be29608fcf1ca2abdcaf5d5752bbc"
        "2b5ac7dba5afcff4a5641da360dd01f7112539b1ed46cdb550a3b1006559b9fe1891030ec80f0727c42401ddd6cbb5e3"
        "c80f312df6ec89394c5a7118f573105e7ab00fe57833c126141b50a935224842addfb479f75160659ba28877b512bb9a"
        "93084ad8bec540f92640f63a11a010e0"),
     to_bytes(view("lorem ipsum"))},
    {"valid (its synthetic message would be maximal)",
     H(
        "1ea0b50ca65203d0a09280d39704b24fe6e47800189db5033f202761a78bafb270c5e25abd1f7ecc6e7abc4f26d1b0cd"
        "9b8c648d529416ee64ccbdd7aa72a771d0353262b543f0e436076f40a1095f5c7dfd10dcf0059ccb30e92dfa5e015661"
        "8215f1c3ff3aa997a9d999e506924f5289e3ac72e5e2086cc7b499d71583ed561028671155db4005bee01800a7cdbdae"
        "781dd32199b8914b5d4011dd6ff11cd26d46aad54934d293b0bc403dd211bf13b5a5c6836a5e769930f437ffd8634fb7"
        "371776f4bc88fa6c271d8aa6013df89ae6470154497c4ac861be2a1c65ebffec139bf7aaba3a81c7c5cdd84da9af5d3e"
        "dfb957848074686b5837ecbcb6a41c50"),
     to_bytes(view("lorem ipsum"))},
    {"invalid: random",
     H(
        "5f02f4b1f46935c742ebe62b6f05aa0a3286aab91a49b34780adde6410ab46f7386e05748331864ac98e1da63686e4ba"
        "be3a19ed40a7f5ceefb89179596aab07ab1015e03b8f825084dab028b6731288f2e511a4b314b6ea3997d2e8fe2825ce"
        "f8897cbbdfb6c939d441d6e04948414bb69e682927ef8576c9a7090d4aad0e74c520d6d5ce63a154720f00b76de8cc55"
        "0b1aa14f016d63a7b6d6eaa1f7dbe9e50200d3159b3d099c900116bf4eba3b94204f18b1317b07529751abf64a26b0a0"
        "bf1c8ce757333b3d673211b67cc0653f2fe2620d57c8b6ee574a0323a167eab1106d9bc7fd90d415be5f1e9891a0e6c7"
        "09f4fc0404e8226f8477b4e939b36eb2"),
     H("af9ac70191c92413cb9f2d")},
    {"invalid: first byte 01",
     H(
        "9b2ec9c0c917c98f1ad3d0119aec6be51ae3106e9af1914d48600ab6a2c0c0c8ae02a2dc3039906ff3aac904af32ec79"
        "8fd65f3ad1afa2e69400e7c1de81f5728f3b3291f38263bc7a90a0563e43ce7a0d4ee9c0d8a716621ca5d3d081188769"
        "ce1b131af7d35b13dea99153579c86db31fe07d5a2c14d621b77854e48a8df41b5798563af489a291e417b6a334c6322"
        "2627376118c02c53b6e86310f728734ffc86ef9d7c8bf56c0c841b24b82b59f51aee4526ba1c4268506d301e4ebc498c"
        "6aebb6fd5258c876bf900bac8ca4d309dd522f6a6343599a8bc3760f422c10c72d0ad527ce4af1874124ace3d99bb74d"
        "b8d69d2528db22c3a37644640f95c05f"),
     H("a1f8c9255c35cfba403ccc")},
    {"invalid: second byte 01",
     H(
        "782c2b59a21a511243820acedd567c136f6d3090c115232a82a5efb0b178285f55b5ec2d2bac96bf00d6592ea7cdc334"
        "1610c8fb07e527e5e2d20cfaf2c7f23e375431f45e998929a02f25fd95354c33838090bca838502259e92d86d568bc2c"
        "db132fab2a399593ca60a015dc2bb1afcd64fef8a3834e17e5358d822980dc446e845b3ab4702b1ee41fe5db716d9234"
        "8d5091c15d35a110555a35deb4650a5a1d2c98025d42d4544f8b32aa6a5e02dc02deaed9a7313b73b49b0d4772a3768b"
        "0ea0db5846ace6569cae677bf67fb0acf3c255dc01ec8400c963b6e49b1067728b4e563d7e1e1515664347b92ee64db7"
        "efb5452357a02fff7fcb7437abc2e579"),
     H("e6d700309ca0ed62452254")},
    {"invalid: first padding byte zero, ciphertext with a leading zero",
     H(
        "0096136621faf36d5290b16bd26295de27f895d1faa51c800dafce73d001d60796cd4e2ac3fa2162131d859cd9da5a0c"
        "8a42281d9a63e5f353971b72e36b5722e4ac444d77f892a5443deb3dca49fa732fe855727196e23c26eeac55eeced826"
        "7a209ebc0f92f4656d64a6c13f7f7ce544ebeb0f668fe3a6c0f189e4bcd5ea12b73cf63e0c8350ee130dd62f01e5c97a"
        "1e13f52fde96a9a1bc9936ce734fdd61f27b18216f1d6de87f49cf4f2ea821fb8efd1f92cdad529baf7e31aff9bff407"
        "4f2cad2b4243dd15a711adcf7de900851fbd6bcb53dac399d7c880531d06f25f7002e1aaf1722765865d2c2b902c7736"
        "acd27bc6cbd3e38b560e2eecf7d4b576"),
     H("ba27b1842e7c21c0e7ef6a")},
    {"invalid, ciphertext with two leading zero bytes",
     H(
        "0000587cccc6b264bdfe0dc2149a988047fa921801f3502ea64624c510c6033d2f427e3f136c26e88ea9f6519e86a542"
        "cec96aad1e5e9013c3cc203b6de15a69183050813af5c9ad79703136d4b92f50ce171eefc6aa7988ecf02f319ffc5eaf"
        "d6ee7a137f8fce64b255bb1b8dd19cfe767d64fdb468b9b2e9e7a0c24dae03239c8c714d3f40b7ee9c4e59ac15b17e4d"
        "328f1100756bce17133e8e7493b54e5006c3cbcdacd134130c5132a1edebdbd01a0c41452d16ed7a0788003c34730d08"
        "08e7e14c797a21f2b45a8aa1644357fd5e988f99b017d9df37563a354c788dc0e2f9466045622fa3f3e17db63414d277"
        "61f57392623a2bef6467501c63e8d645"),
     H("d5cf555b1d6151029a429a")},
    {"invalid: EM starts 00 00 02",
     H(
        "1786550ce8d8433052e01ecba8b76d3019f1355b212ac9d0f5191b023325a7e7714b7802f8e9a17c4cb3cd3a84041891"
        "471b10ca1fcfb5d041d34c82e6d0011cf4dc76b90e9c2e0743590579d55bcd7857057152c4a8040361343d1d22ba677d"
        "62b011407c652e234b1d663af25e2386251d7409190f19fc8ec3f9374fdf1254633874ce2ec2bff40ad0cb473f9761ec"
        "7b68da45a4bd5e33f5d7dac9b9a20821df9406b653f78a95a6c0ea0a4d57f867e4db22c17bf9a12c150f809a7b72b6db"
        "86c22a8732241ebf3c6a4f2cf82671d917aba8bc61052b40ccddd743a94ea9b538175106201971cca9d136d25081739a"
        "af6cd18b2aecf9ad320ea3f89502f955"),
     H("3d4a054d9358209e9cbbb9")},
    {"good header, zero in the first padding byte",
     H(
        "179598823812d2c58a7eb50521150a48bcca8b4eb53414018b6bca19f4801456c5e36a940037ac516b0d6412ba44ec6b"
        "4f268a55ef1c5ffbf18a2f4e3522bb7b6ed89774b79bffa22f7d3102165565642de0d43a955e96a1f2e80e5430671d72"
        "66eb4f905dc8ff5e106dc5588e5b0289e49a4913940e392a97062616d2bda38155471b7d360cfb94681c702f60ed2d4d"
        "e614ea72bf1c53160e63179f6c5b897b59492bee219108309f0b7b8cb2b136c346a5e98b8b4b8415fb1d713bae067911"
        "e3057f1c335b4b7e39101eafd5d28f0189037e4334f4fdb9038427b1d119a6702aa8233319cc97d496cc289ae8c956dd"
        "c84042659a2d43d6aa22f12b81ab884e"),
     H("1f037dd717b07d3e7f7359")},
    {"good header, separator in the eighth padding byte (padding too short)",
     H(
        "a7a340675a82c30e22219a55bc07cdf36d47d01834c1834f917f18b517419ce9de2a96460e745024436470ed85e94297"
        "b283537d52189c406a3f533cb405cc6a9dba46b482ce98b6e3dd52d8fce2237425617e38c11fbc46b61897ef200d01e4"
        "f25f5f6c4c5b38cd0de38ba11908b86595a8036a08a42a3d05b79600a97ac18ba368a08d6cf6ccb624f6e8002afc7559"
        "9fba4de3d4f3ba7d208391ebe8d21f8282b18e2c10869eb2702e68f9176b42b0ddc9d763f0c86ba0ff92c957aaeab76d"
        "9ab8da52ea297ec11d92d770146faa1b300e0f91ef969b53e7d2907ffc984e9a9c9d11fb7d6cba91972059b46506b035"
        "efec6575c46d7114a6b935864858445f"),
     H("63cb0bf65fc8255dd29e17")},
    {"good header, no separator",
     H(
        "3d1b97e7aa34eaf1f4fc171ceb11dcfffd9a46a5b6961205b10b302818c1fcc9f4ec78bf18ea0cee7e9fa5b16fb4c611"
        "463b368b3312ac11cf9c06b7cf72b54e284848a508d3f02328c62c2999d0fb60929f81783c7a256891bc2ff4d91df2af"
        "96a24fc5701a1823af939ce6dbdc510608e3d41eec172ad2d51b9fc61b4217c923cadcf5bac321355ef8be5e5f090cdc"
        "2bd0c697d9058247db3ad613fdce87d2955a6d1c948a5160f93da21f731d74137f5d1f53a1923adb513d2e6e1589d44c"
        "c079f4c6ddd471d38ac82d20d8b1d21f8d65f3b6907086809f4123e08d86fb38729585de026a485d8f0e703fd4772f66"
        "68febf67df947b82195fa3867e3a3065"),
     H("6f09a0b62699337c497b0b")},
  };
  return v;
}

const Vector& vector_named(std::string_view what) {
  for (const auto& v : vectors())
    if (v.what == what) return v;
  FAIL("no test vector " << what);
  return vectors().front();
}

CipherParams pkcs1() {
  CipherParams p;
  p.scheme = CS::rsa_pkcs1;
  return p;
}

KeyPtr kat_key(Backend& b) { return ok(b.load_private(ok(b.decode_pkcs8(kat_key_der())))); }

}  // namespace

TEST_CASE("RSA PKCS#1 v1.5 decryption: implicit rejection known answers") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto priv = kat_key(*b);
    for (const auto& v : vectors()) {
      CAPTURE(v.what);
      SecureBytes got = ok(run_cipher(*b, priv, pkcs1(), v.ciphertext, false));
      CHECK(hex(got) == hex(v.message));
    }
  }
}

TEST_CASE("RSA PKCS#1 v1.5 decryption: bad padding and good padding of a bad length look alike") {
  // Neither is an error: each decrypts, deterministically, to a message of at most k - 11 bytes,
  // so nothing above the backend can tell them apart or from a valid ciphertext.
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto priv = kat_key(*b);
    for (const char* what : {"invalid: first byte 01", "invalid: second byte 01",
                             "good header, separator in the eighth padding byte (padding too short)",
                             "good header, no separator", "invalid: EM starts 00 00 02"}) {
      CAPTURE(what);
      const Vector& v = vector_named(what);
      SecureBytes first = ok(run_cipher(*b, priv, pkcs1(), v.ciphertext, false));
      CHECK(first.size() <= 256 - 11);
      CHECK(ok(run_cipher(*b, priv, pkcs1(), v.ciphertext, false)) == first);
    }
  }
}

TEST_CASE("interop: both backends give the same synthetic message for the same key and ciphertext") {
  Backend* o = openssl_backend();
  Backend* t = botan_backend();
  REQUIRE(o != nullptr);
  REQUIRE(t != nullptr);
  const RsaPrivate& k = rsa2048(*o);
  auto ko = ok(o->load_private(k));
  auto kt = ok(t->load_private(k));
  for (int i = 0; i < 8; ++i) {
    Bytes c = random_bytes(256);
    c[0] = 0;  // below the modulus
    SecureBytes a = ok(run_cipher(*o, ko, pkcs1(), c, false));
    CHECK(a == ok(run_cipher(*t, kt, pkcs1(), c, false)));
  }
  SecureBytes zero(256, 0);
  CHECK(ok(run_cipher(*o, ko, pkcs1(), zero, false)) == ok(run_cipher(*t, kt, pkcs1(), zero, false)));
  // And a real ciphertext still decrypts to its message in both.
  auto pub = ok(o->load_public(RsaPublic{k.n, k.e}));
  Bytes pt = random_bytes(100);
  SecureBytes ct = ok(run_cipher(*o, pub, pkcs1(), pt, true));
  CHECK(ok(run_cipher(*o, ko, pkcs1(), ct, false)) == to_secure(pt));
  CHECK(ok(run_cipher(*t, kt, pkcs1(), ct, false)) == to_secure(pt));
}

TEST_CASE("RSA decryption errors come from public properties only") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto priv = kat_key(*b);
    CipherParams oaep;
    oaep.scheme = CS::rsa_oaep;
    for (const CipherParams& p : {pkcs1(), oaep}) {
      CAPTURE(static_cast<int>(p.scheme));
      CHECK_CODE(run_cipher(*b, priv, p, random_bytes(255), false), Error::Code::bad_input_length);
      CHECK_CODE(run_cipher(*b, priv, p, random_bytes(257), false), Error::Code::bad_input_length);
      CHECK_CODE(run_cipher(*b, priv, p, {}, false), Error::Code::bad_input_length);
      // Not below the modulus: not an RSA ciphertext for this key at all.
      CHECK_CODE(run_cipher(*b, priv, p, Bytes(256, 0xff), false), Error::Code::bad_encrypted_input);
    }
  }
}

}  // namespace cdcp11::crypto::test
