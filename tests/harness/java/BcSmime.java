/*
 * Bouncy Castle as an interoperability peer for the tests: decrypts an EnvelopedData and verifies
 * a detached SignedData the way a Java mail client built on bcpkix would. Run it with Java's
 * single-file source launcher, no build step (tests/harness/peers.py does):
 *
 *   java -cp bcprov.jar:bcpkix.jar:bcutil.jar BcSmime.java decrypt ENVELOPED.der CERT KEY
 *       writes the decrypted content to standard output
 *   java -cp ... BcSmime.java verify SIGNATURE.der CONTENT ANCHOR
 *       checks every signer's signature and its certificate's path to ANCHOR (now, no revocation),
 *       prints each signer's subject
 *
 * CERT and ANCHOR are X.509 certificates, KEY a PKCS#8 private key, PEM or DER. Any failure exits
 * 1 with one line on standard error naming the reason; nothing secret is ever printed.
 */

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.Security;
import java.security.cert.CertPathBuilder;
import java.security.cert.CertStore;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXBuilderParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CertSelector;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cms.CMSEnvelopedData;
import org.bouncycastle.cms.CMSProcessableByteArray;
import org.bouncycastle.cms.CMSSignedData;
import org.bouncycastle.cms.RecipientInformation;
import org.bouncycastle.cms.SignerInformation;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.cms.jcajce.JceKeyTransEnvelopedRecipient;
import org.bouncycastle.cms.jcajce.JceKeyTransRecipientId;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;

public final class BcSmime {
    public static void main(String[] args) {
        Security.addProvider(new BouncyCastleProvider());
        try {
            if (args.length == 4 && args[0].equals("decrypt")) {
                byte[] content = decrypt(read(args[1]), certificate(args[2]), privateKey(args[3]));
                System.out.write(content);
                System.out.flush();
            } else if (args.length == 4 && args[0].equals("verify")) {
                for (String signer : verify(read(args[1]), read(args[2]), certificate(args[3]))) {
                    System.out.println("verified: " + signer);
                }
            } else {
                fail("usage: BcSmime decrypt ENVELOPED.der CERT KEY | verify SIGNATURE.der CONTENT ANCHOR");
            }
        } catch (Exception e) {
            fail(e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }

    /** RSA key transport (PKCS#1 v1.5 or OAEP) to the RecipientInfo that names CERT. */
    static byte[] decrypt(byte[] der, X509Certificate cert, PrivateKey key) throws Exception {
        CMSEnvelopedData enveloped = new CMSEnvelopedData(der);
        RecipientInformation recipient =
                enveloped.getRecipientInfos().get(new JceKeyTransRecipientId(cert));
        if (recipient == null) {
            throw new IllegalArgumentException("no key transport RecipientInfo names "
                    + cert.getSubjectX500Principal());
        }
        return recipient.getContent(new JceKeyTransEnvelopedRecipient(key).setProvider("BC"));
    }

    /** Every SignerInfo's signature, then its certificate's PKIX path to the anchor. */
    static List<String> verify(byte[] signature, byte[] content, X509Certificate anchor)
            throws Exception {
        CMSSignedData signed = new CMSSignedData(new CMSProcessableByteArray(content), signature);
        JcaX509CertificateConverter converter = new JcaX509CertificateConverter().setProvider("BC");
        Collection<X509CertificateHolder> holders = signed.getCertificates().getMatches(null);
        List<X509Certificate> included = new ArrayList<>();
        for (X509CertificateHolder holder : holders) {
            included.add(converter.getCertificate(holder));
        }
        Collection<SignerInformation> signers = signed.getSignerInfos().getSigners();
        if (signers.isEmpty()) {
            throw new IllegalArgumentException("the SignedData has no SignerInfo");
        }
        List<String> verified = new ArrayList<>();
        for (SignerInformation signer : signers) {
            X509CertificateHolder holder = holders.stream()
                    .filter(signer.getSID()::match)
                    .findFirst()
                    .orElseThrow(() -> new IllegalArgumentException(
                            "no certificate in the SignedData for a signer"));
            if (!signer.verify(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(holder))) {
                throw new SecurityException("signature does not verify for " + holder.getSubject());
            }
            checkPath(converter.getCertificate(holder), included, anchor);
            verified.add(holder.getSubject().toString());
        }
        return verified;
    }

    static void checkPath(X509Certificate leaf, List<X509Certificate> included, X509Certificate anchor)
            throws Exception {
        X509CertSelector target = new X509CertSelector();
        target.setCertificate(leaf);
        PKIXBuilderParameters parameters =
                new PKIXBuilderParameters(Set.of(new TrustAnchor(anchor, null)), target);
        parameters.addCertStore(CertStore.getInstance("Collection",
                new CollectionCertStoreParameters(included)));
        parameters.setRevocationEnabled(false); // the tests' CAs publish no CRL here
        CertPathBuilder.getInstance("PKIX").build(parameters); // throws when no valid path exists
    }

    static X509Certificate certificate(String path) throws Exception {
        return (X509Certificate) CertificateFactory.getInstance("X.509")
                .generateCertificate(new ByteArrayInputStream(read(path)));
    }

    static PrivateKey privateKey(String path) throws Exception {
        byte[] bytes = read(path);
        String text = new String(bytes, StandardCharsets.US_ASCII);
        PrivateKeyInfo info;
        if (text.contains("-----BEGIN PRIVATE KEY-----")) {
            try (PEMParser parser = new PEMParser(new StringReader(text))) {
                info = PrivateKeyInfo.getInstance(parser.readObject());
            }
        } else {
            info = PrivateKeyInfo.getInstance(bytes);
        }
        return new JcaPEMKeyConverter().setProvider("BC").getPrivateKey(info);
    }

    static byte[] read(String path) throws IOException {
        return Files.readAllBytes(Path.of(path));
    }

    static void fail(String reason) {
        System.err.println("BcSmime: " + reason.replaceAll("\\s+", " ").trim());
        System.exit(1);
    }
}
